import { execFile } from 'node:child_process';
import { access, constants, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { APPARMOR_DEFAULT_PROFILE, type AppArmorRequest, BerthError, Code } from '@berth/api';
import { kernelHasAppArmor } from '@berth/kit/apparmor';
import { writeAtomic } from '../files.js';
import { defaultProfileText } from './profile.js';

const exec = promisify(execFile);

/** Where the kernel lists the AppArmor profiles loaded. */
export const APPARMOR_PROFILES_FILE = '/sys/kernel/security/apparmor/profiles';

/** Where apparmor_parser is looked for when no path is configured (Debian's, then older systems'). */
export const APPARMOR_PARSER_PATHS = ['/usr/sbin/apparmor_parser', '/sbin/apparmor_parser'] as const;

/** How long a load of the default profile may take (compiling it is well under a second). */
const LOAD_TIMEOUT_MS = 60_000;

/** What NodeAppArmor reads and runs; each has the real node's default (tests inject fakes). */
export interface NodeAppArmorOptions {
  /** Where the default profile's text is written before it is loaded (layout.apparmor). */
  dir: string;
  /** The node's name, for messages. */
  node: string;
  /** Whether the kernel has AppArmor on; default kernelHasAppArmor(), asked once. */
  enabled?: () => boolean;
  /** apparmor_parser; default the first of APPARMOR_PARSER_PATHS that is executable. */
  parser?: string;
  /** The kernel's list of loaded profiles; default APPARMOR_PROFILES_FILE. */
  profilesFile?: string;
}

/** The names in a kernel profile list: one `<name> (<mode>)` per line. */
export function profileNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const end = line.lastIndexOf(' (');
    const name = end > 0 ? line.slice(0, end) : line.trim();
    if (name) names.add(name);
  }
  return names;
}

/**
 * A node's AppArmor, as its shim resolves a container's request at task create: whether the
 * kernel has it, which profiles are loaded, and berth's default profile, which it loads with
 * `apparmor_parser -Kr` from a file it writes under `dir`: the first time a container needs it in
 * this process's life (so a new berth's profile replaces an older one), and again whenever the
 * kernel no longer lists it.
 */
export class NodeAppArmor {
  private readonly dir: string;
  private readonly node: string;
  private readonly enabledFn: () => boolean;
  private readonly parser: string | undefined;
  private readonly profilesFile: string;
  private enabledValue: boolean | undefined;
  private loadedOnce = false;
  private loading: Promise<void> | undefined;

  constructor(o: NodeAppArmorOptions) {
    this.dir = o.dir;
    this.node = o.node;
    this.enabledFn = o.enabled ?? (() => kernelHasAppArmor());
    this.parser = o.parser;
    this.profilesFile = o.profilesFile ?? APPARMOR_PROFILES_FILE;
  }

  /** Whether the node's kernel has AppArmor on (asked once: it is fixed at boot). */
  get enabled(): boolean {
    this.enabledValue ??= this.enabledFn();
    return this.enabledValue;
  }

  /** Whether the kernel lists a profile of this name; FAILED_PRECONDITION when the list is unreadable. */
  async isLoaded(name: string): Promise<boolean> {
    let text: string;
    try {
      text = await readFile(this.profilesFile, 'utf8');
    } catch (err) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `cannot read the AppArmor profiles loaded on node "${this.node}" (${this.profilesFile}; is securityfs mounted?): ${(err as Error).message}`,
        { cause: err },
      );
    }
    return profileNames(text).has(name);
  }

  /**
   * The profile a request gives a process on this node, or undefined for none: none for
   * `unconfined`, and for `default` where the kernel has no AppArmor; berth's default (loaded if
   * need be) for `default`, or a `localhost` request naming it; else the named profile, which
   * must be loaded. FAILED_PRECONDITION names the profile and the node otherwise.
   */
  async resolve(req: AppArmorRequest): Promise<string | undefined> {
    if (req.mode === 'unconfined') return undefined;
    if (req.mode === 'default' && !this.enabled) return undefined;
    if (req.mode === 'localhost' && !this.enabled) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `AppArmor profile "${req.name}" was asked for, but the kernel of node "${this.node}" has no AppArmor`,
      );
    }
    if (req.mode === 'default' || req.name === APPARMOR_DEFAULT_PROFILE) {
      await this.ensureDefault();
      return APPARMOR_DEFAULT_PROFILE;
    }
    if (!(await this.isLoaded(req.name))) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `AppArmor profile "${req.name}" is not loaded on node "${this.node}" (load it with apparmor_parser first)`,
      );
    }
    return req.name;
  }

  /**
   * Sets (or, for none, removes) process.apparmorProfile of a spec for this node. Mutates `spec`.
   */
  async apply(spec: Record<string, unknown>, req: AppArmorRequest): Promise<void> {
    const profile = await this.resolve(req);
    const proc = (spec.process as Record<string, unknown> | undefined) ?? {};
    spec.process = proc;
    if (profile) proc.apparmorProfile = profile;
    else delete proc.apparmorProfile;
  }

  /**
   * Makes sure berth's default profile is loaded: loaded by this process once, and listed by the
   * kernel now. Concurrent creates share one load.
   */
  async ensureDefault(): Promise<void> {
    if (this.loading) return this.loading;
    if (this.loadedOnce && (await this.isLoaded(APPARMOR_DEFAULT_PROFILE))) return;
    this.loading ??= this.loadDefault().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async loadDefault(): Promise<void> {
    const parser = await this.parserPath();
    const file = join(this.dir, APPARMOR_DEFAULT_PROFILE);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeAtomic(file, defaultProfileText(APPARMOR_DEFAULT_PROFILE), 0o644);
    try {
      // -K: no cache (the text is ours and small), -r: replace a profile of the same name.
      await exec(parser, ['-Kr', file], { timeout: LOAD_TIMEOUT_MS });
    } catch (err) {
      const e = err as Error & { stderr?: string };
      const why = (e.stderr ?? '').trim() || e.message;
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `loading AppArmor profile "${APPARMOR_DEFAULT_PROFILE}" on node "${this.node}" with ${parser} -Kr ${file} failed: ${why}`,
        { cause: err },
      );
    }
    if (!(await this.isLoaded(APPARMOR_DEFAULT_PROFILE))) {
      throw new BerthError(
        Code.INTERNAL,
        `${parser} loaded AppArmor profile "${APPARMOR_DEFAULT_PROFILE}" on node "${this.node}", but ${this.profilesFile} does not list it`,
      );
    }
    this.loadedOnce = true;
  }

  /** The parser to run; FAILED_PRECONDITION naming the package when there is none. */
  private async parserPath(): Promise<string> {
    const candidates = this.parser ? [this.parser] : APPARMOR_PARSER_PATHS;
    for (const p of candidates) {
      try {
        await access(p, constants.X_OK);
        return p;
      } catch {
        // the next one
      }
    }
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `node "${this.node}" has AppArmor on and its containers get berth's AppArmor profile "${APPARMOR_DEFAULT_PROFILE}", but apparmor_parser, which loads it, is not there (${candidates.join(', ')}): install the package "apparmor"`,
    );
  }
}
