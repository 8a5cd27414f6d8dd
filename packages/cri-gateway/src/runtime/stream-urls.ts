import { BerthError, Code } from '@berth/api';
import type { StreamingServer } from '../streaming/index.js';
import type { ContainerRuntime } from './containers.js';
import type { PodRuntime } from './pods.js';
import { stringList } from './validate.js';

/** The CRI ExecRequest and AttachRequest as on the wire (proto field names). */
export interface CriCommandRequest {
  container_id?: string;
  cmd?: unknown;
  tty?: boolean;
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
}

/** The CRI PortForwardRequest as on the wire. */
export interface CriPortForwardRequest {
  pod_sandbox_id?: string;
  port?: unknown;
}

/**
 * The CRI Exec, Attach and PortForward RPCs: check the container or pod as containerd does
 * (absent: NOT_FOUND, not running: FAILED_PRECONDITION) and hand out the streaming server's
 * one-shot URL for the session.
 */
export class StreamUrls {
  constructor(
    private readonly server: StreamingServer,
    private readonly containers: ContainerRuntime,
    private readonly pods: PodRuntime,
  ) {}

  /** Exec: the URL of a session running `cmd` in the running container. */
  async exec(req: CriCommandRequest): Promise<string> {
    const cmd = stringList(req.cmd, 'cmd');
    if (cmd.length === 0) throw new BerthError(Code.INVALID_ARGUMENT, 'cmd is required');
    const containerId = await this.runningContainer(req.container_id);
    return this.server.url('exec', { containerId, cmd, ...flags(req) });
  }

  /** Attach: the URL of a session attached to the running container's main process. */
  async attach(req: CriCommandRequest): Promise<string> {
    const containerId = await this.runningContainer(req.container_id);
    return this.server.url('attach', { containerId, ...flags(req) });
  }

  /** PortForward: the URL of a session forwarding ports of the ready pod sandbox. */
  async portForward(req: CriPortForwardRequest): Promise<string> {
    const raw = req.port ?? [];
    if (!Array.isArray(raw)) throw new BerthError(Code.INVALID_ARGUMENT, 'port must be a list of ports');
    const ports = raw.map((p, i) => {
      const n = Number(p);
      if (!Number.isInteger(n) || n < 1 || n > 65535) {
        throw new BerthError(
          Code.INVALID_ARGUMENT,
          `port[${i}] must be a port in 1..65535, not ${String(p)}`,
        );
      }
      return n;
    });
    if (!req.pod_sandbox_id) throw new BerthError(Code.INVALID_ARGUMENT, 'pod_sandbox_id is required');
    const sb = await this.pods.get(req.pod_sandbox_id);
    if (sb.info.status !== 'running') {
      throw new BerthError(Code.FAILED_PRECONDITION, `pod sandbox ${sb.info.container.id} is not ready`);
    }
    return this.server.url('portforward', { podSandboxId: sb.info.container.id, ports });
  }

  private async runningContainer(id: string | undefined): Promise<string> {
    if (!id) throw new BerthError(Code.INVALID_ARGUMENT, 'container_id is required');
    const info = await this.containers.get(id);
    if (info.status !== 'running') {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `container ${info.container.id} is in ${info.status} state, not running`,
      );
    }
    return info.container.id;
  }
}

function flags(req: CriCommandRequest) {
  return {
    tty: req.tty === true,
    stdin: req.stdin === true,
    stdout: req.stdout === true,
    stderr: req.stderr === true,
  };
}
