import { fenceCheckLua, redisScript } from '@berth/kit';

// The Lua scripts of the container store (store.ts): each one change made atomically in Redis.

/**
 * The field of a container's hash (keys.container) holding its claim on its image's chain while
 * its rootfs snapshot is not prepared: JSON {node, chainId} (see ContainerStore.claimedChains).
 * The field is the claim; keys.chainClaims(node) indexes the records that have one, and every
 * script that writes or drops the field changes the index in the same step.
 */
export const CHAIN_CLAIM_FIELD = 'chainClaim';

/**
 * Lua lines dropping the index entry `member` of the claim the record KEYS[recordKey] holds, if
 * any: from the index of the node the claim names (`prefix` .. node, prefix the value of
 * keys.chainClaims('')). Put them before the record is deleted.
 */
function unindexClaimLua(recordKey: number, prefixArg: number, memberArg: number): string {
  return `local claim = redis.call('hget', KEYS[${recordKey}], '${CHAIN_CLAIM_FIELD}')
if claim then redis.call('srem', ARGV[${prefixArg}] .. cjson.decode(claim).node, ARGV[${memberArg}]) end
`;
}

/**
 * Deletes a name reservation only when it still points at the container being released.
 */
export const RELEASE_NAME = redisScript(
  'delete-if-equal',
  `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`,
);

/**
 * An exit is recorded once, and only for the process it belongs to: a late exit of a previous
 * run (different pid) must not stop the task of a restarted container.
 */
export const RECORD_EXIT = redisScript(
  'task record-exit',
  `
if redis.call('exists', KEYS[1]) == 0 then return 0 end
local st = redis.call('hget', KEYS[1], 'status')
if st == 'stopped' then return 0 end
local pid = tonumber(redis.call('hget', KEYS[1], 'pid') or '0')
local epid = tonumber(ARGV[1])
if pid ~= 0 and epid ~= 0 and pid ~= epid then return 0 end
redis.call('hset', KEYS[1], 'status', 'stopped', 'exitCode', ARGV[2], 'exitedAt', ARGV[3], 'reason', ARGV[4])
return 1`,
);

/**
 * running/paused transitions never resurrect a stopped task (its exit may have landed first).
 */
export const SET_STATUS = redisScript(
  'task set-status',
  `
if redis.call('exists', KEYS[1]) == 0 then return 0 end
if redis.call('hget', KEYS[1], 'status') == 'stopped' then return 0 end
for i = 1, #ARGV, 2 do redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1`,
);

/**
 * Marks a container as being removed, only while its record exists (never a partial hash).
 */
export const MARK_REMOVING = redisScript(
  'task mark-removing',
  `if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], 'removing', ARGV[1])
return 1`,
);

/**
 * A creation begins: its name reserved and its intent recorded in one step (ALREADY_EXISTS
 * leaves neither). Returns 1, 0 when its id (a caller's choice) is another container's: stored
 * (KEYS[3]), being created (an intent in KEYS[2]) or being freed (KEYS[4]), or the id of the
 * container holding the name.
 */
export const BEGIN_CREATE = redisScript(
  'container begin-create',
  `
if redis.call('exists', KEYS[3]) == 1 or redis.call('hexists', KEYS[2], ARGV[1]) == 1
  or redis.call('hexists', KEYS[4], ARGV[1]) == 1 then return 0 end
if not redis.call('set', KEYS[1], ARGV[1], 'NX') then return redis.call('get', KEYS[1]) or '?' end
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
return 1`,
);

/**
 * The background removal of a container whose task is stopped, never started or absent, when
 * nobody holds its lock: as lock, read, deleteForCollection and release would, in one step. The
 * name's key is the prefix ARGV[2] and the record's name (one Redis, never a cluster); its chain
 * claim's index entry ARGV[4] goes from the index ARGV[3] and the claim's node. Returns
 * {'removed', record JSON, task fields...}, or {'busy'} (locked), {'gone'}, {'live'}.
 */
export const REMOVE_DONE = redisScript(
  'container remove-done',
  `
if redis.call('exists', KEYS[1]) == 1 then return {'busy'} end
local data = redis.call('hget', KEYS[2], 'data')
if not data then return {'gone'} end
local st = redis.call('hget', KEYS[3], 'status')
if st and st ~= 'stopped' and st ~= 'created' then return {'live'} end
local task = redis.call('hgetall', KEYS[3])
local name = redis.call('hget', KEYS[2], 'name')
${unindexClaimLua(2, 3, 4)}redis.call('hset', KEYS[5], ARGV[1], data)
redis.call('del', KEYS[2], KEYS[3])
redis.call('srem', KEYS[4], ARGV[1])
if name then
  local nk = ARGV[2] .. name
  if redis.call('get', nk) == ARGV[1] then redis.call('del', nk) end
end
return {'removed', data, unpack(task)}`,
);

/**
 * A container made with nothing before its record (its rootfs prepared after the reply): its name
 * reserved and its record stored in one step, as put() stores one (ALREADY_EXISTS leaves
 * neither), with its claim on its image's chain (ARGV[5], field CHAIN_CLAIM_FIELD; none when
 * empty) indexed as ARGV[6] in its node's index KEYS[6]. Run again for the same id (ioredis
 * resends a command whose reply a dropped connection lost) it stores the same again: only the
 * very same record (a caller's id names no other).
 * Returns 1, 0 when its id is another container's: stored with another record (KEYS[2]), being
 * created (an intent in KEYS[4]) or being freed (KEYS[5]), or the id of the container holding
 * the name.
 */
export const CREATE_NAMED = redisScript(
  'container create-named',
  `
local stored = redis.call('hget', KEYS[2], 'data')
if (stored and stored ~= ARGV[2]) or redis.call('hexists', KEYS[4], ARGV[1]) == 1
  or redis.call('hexists', KEYS[5], ARGV[1]) == 1 then return 0 end
if not redis.call('set', KEYS[1], ARGV[1], 'NX') then
  local holder = redis.call('get', KEYS[1])
  if holder ~= ARGV[1] then return holder or '?' end
end
redis.call('hset', KEYS[2], 'data', ARGV[2], 'name', ARGV[3], 'createdAt', ARGV[4])
if ARGV[5] ~= '' then
  redis.call('hset', KEYS[2], '${CHAIN_CLAIM_FIELD}', ARGV[5])
  redis.call('sadd', KEYS[6], ARGV[6])
end
redis.call('sadd', KEYS[3], ARGV[1])
return 1`,
);

/**
 * The record of a container created without its rootfs mounts replaced by the same record with
 * them, and its chain claim dropped with its index entry ARGV[5] (the index is the prefix ARGV[4]
 * and the claim's node; the snapshot now holds the chain), only under the creator's lock (KEYS[1]
 * holds ARGV[1]: FENCED otherwise) and only while the record is still the one stored at create
 * (ARGV[2]); returns 1, or 0 when it is not.
 */
export const ADD_ROOTFS = redisScript(
  'container add-rootfs',
  `${fenceCheckLua(1, 1)}if redis.call('hget', KEYS[2], 'data') ~= ARGV[2] then return 0 end
redis.call('hset', KEYS[2], 'data', ARGV[3])
${unindexClaimLua(2, 4, 5)}redis.call('hdel', KEYS[2], '${CHAIN_CLAIM_FIELD}')
return 1`,
);

/**
 * Indexes the claim a record holds as ARGV[1] in its node's index KEYS[2], only while the record
 * KEYS[1] still holds that very claim ARGV[2] (a drop meanwhile is not undone): for records a
 * task-service of the version before the index wrote (see ContainerStore.indexClaims). Returns 1
 * when it was not indexed before, else 0.
 */
export const INDEX_CLAIM = redisScript(
  'container index-claim',
  `if redis.call('hget', KEYS[1], '${CHAIN_CLAIM_FIELD}') ~= ARGV[2] then return 0 end
return redis.call('sadd', KEYS[2], ARGV[1])`,
);

/**
 * Drops the index entry ARGV[1] from a node's index KEYS[2] while the record KEYS[1] holds no
 * claim (gone, or its claim dropped by a task-service of the version before the index); returns
 * 1 when it did.
 */
export const UNINDEX_STALE_CLAIM = redisScript(
  'container unindex-stale-claim',
  `if redis.call('hexists', KEYS[1], '${CHAIN_CLAIM_FIELD}') == 1 then return 0 end
return redis.call('srem', KEYS[2], ARGV[1])`,
);
