// Shared by the addons whose async work settles a promise: a failed job rejects it with an Error
// whose `code` names the errno (each addon names the ones its calls return) and whose message is
// the errno's text, as Node's own fs errors read.
#ifndef BERTH_ERRNO_ERROR_H
#define BERTH_ERRNO_ERROR_H

#include <errno.h>
#include <node_api.h>
#include <string.h>

// The errno of a finished job: its own, or ECANCELED when N-API cancelled the work.
static inline int job_errno(napi_status status, int err) { return status == napi_ok ? err : ECANCELED; }

// Rejects `deferred` with Error(strerror(err)) whose code is `code`.
static inline void reject_errno(napi_env env, napi_deferred deferred, int err, const char *code) {
  napi_value name, msg, error;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &name);
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, name, msg, &error);
  napi_reject_deferred(env, deferred, error);
}

#endif
