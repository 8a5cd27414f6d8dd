import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { BerthError, Code } from '@berth/api';
import type { Logger } from '@berth/kit';
import type {
  AttachRequest,
  CommandIo,
  CommandResult,
  ExecRequest,
  StreamingBackend,
} from '../streaming/types.js';
import { bindConsole, type ConsolePort } from './console-io.js';
import type { ContainerRuntime } from './containers.js';
import { type ContainerMeta, metaOf } from './meta.js';
import type { PodRuntime } from './pods.js';
import type { PortRelay } from './port-relay.js';
import type { TaskPort } from './ports.js';
import { ignoreGone } from './stop.js';

/** How long the exit status may take to be recorded once the process's output ended. */
const EXIT_WAIT_MS = 10_000;

/** What the streaming backend needs: the task-service, the CRI objects, the monitors, the relay. */
export interface StreamingBackendDeps {
  tasks: TaskPort;
  containers: ContainerRuntime;
  pods: PodRuntime;
  console: ConsolePort;
  relay: PortRelay;
  log: Logger;
}

/**
 * The streaming server's backend over berth: exec is a task-service exec whose I/O goes through
 * its monitor's attach socket, attach is the container task's attach socket, port-forward dials
 * the port inside the pod's network namespace.
 */
export class BerthStreamingBackend implements StreamingBackend {
  constructor(private readonly d: StreamingBackendDeps) {}

  /** Runs the command as an exec of the container's task and answers its exit code. */
  async exec(req: ExecRequest, io: CommandIo): Promise<CommandResult> {
    const cid = await this.running(req.containerId);
    const execId = `stream-${randomBytes(8).toString('hex')}`;
    const proc = await this.d.tasks.exec({ id: cid, execId, args: req.cmd, tty: req.tty, stdin: req.stdin });
    try {
      if (!proc.attachPath) {
        throw new BerthError(Code.INTERNAL, `exec ${execId} in container ${cid} has no attach socket`);
      }
      // Connected before the start: the monitor does not replay output.
      const con = bindConsole(
        this.d.console,
        {
          attachPath: proc.attachPath,
          ctlPath: proc.ctlPath,
          tty: req.tty,
          stdin: req.stdin,
          stdinEnd: 'close',
        },
        io,
      );
      const gone = () => {
        con.session.detach();
        void ignoreGone(this.d.tasks.kill({ id: cid, execId, signal: 'SIGKILL' })).catch((err: unknown) =>
          this.d.log.warn({ err, cid, execId }, 'could not kill the exec of a client that left'),
        );
      };
      try {
        await con.firstSize;
        // Started even when the client already left: a started exec is one that can be killed,
        // waited for and deleted, where a created one would leave its monitor waiting.
        await this.d.tasks.start(cid, execId);
        if (io.signal.aborted) gone();
        else io.signal.addEventListener('abort', gone, { once: true });
        await con.session.done;
      } finally {
        io.signal.removeEventListener('abort', gone);
        con.unbind();
        con.session.detach();
      }
      // Also after a kill: the exec must have stopped before it can be deleted.
      const exit = await this.d.tasks.wait(cid, { execId, timeoutMs: EXIT_WAIT_MS });
      if (io.signal.aborted) throw left(`exec in container ${cid}`);
      return { exitCode: exit.exitCode };
    } finally {
      await ignoreGone(this.d.tasks.deleteTask(cid, execId)).catch((err: unknown) =>
        this.d.log.warn({ err, cid, execId }, 'could not delete a streaming exec'),
      );
    }
  }

  /**
   * Attaches to the container's main process until its output ends (it exited) or the client
   * leaves (the process keeps running). Stdin only if the container was created with it, a TTY as
   * the container's. As in containerd, the end of the client's stdin closes the stdin of a
   * stdin-once container without a TTY, and output flows on until it exits; otherwise it detaches
   * (crictl's ctrl-p ctrl-q), the process running on. Either way the status is Success: the
   * kubelet's streaming server (which containerd and CRI-O serve attach with) has no exit code for
   * an attach, so `kubectl attach` and `crictl attach` end 0 whatever the exit; the exit code is
   * ContainerStatus's.
   */
  async attach(req: AttachRequest, io: CommandIo): Promise<CommandResult> {
    const info = await this.d.containers.get(req.containerId);
    const cid = info.container.id;
    if (info.status !== 'running' || !info.task?.attachPath) {
      throw new BerthError(Code.FAILED_PRECONDITION, `container ${cid} is ${info.status}, not running`);
    }
    const con = bindConsole(
      this.d.console,
      {
        attachPath: info.task.attachPath,
        ctlPath: info.task.ctlPath,
        tty: info.container.io.terminal,
        stdin: req.stdin && info.container.io.stdin,
        stdinEnd:
          metaOf<ContainerMeta>(info.container).stdinOnce && !info.container.io.terminal ? 'close' : 'detach',
      },
      io,
    );
    const gone = () => con.session.detach();
    io.signal.addEventListener('abort', gone, { once: true });
    try {
      await con.session.done;
    } finally {
      io.signal.removeEventListener('abort', gone);
      con.unbind();
      con.session.detach();
    }
    if (io.signal.aborted) throw left(`attach to container ${cid}`);
    return { exitCode: 0 };
  }

  /** Copies bytes between `stream` and 127.0.0.1:`port` in the pod's network namespace. */
  async portForward(podSandboxId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void> {
    const sb = await this.d.pods.get(podSandboxId);
    const pid = sb.info.task?.pid;
    if (sb.info.status !== 'running' || !pid) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `pod sandbox ${sb.info.container.id} is not ready: cannot forward port ${port}`,
      );
    }
    // The pause process holds the pod's network namespace whatever network the pod has.
    await this.d.relay.forward(`/proc/${pid}/ns/net`, port, stream, signal);
  }

  /** The id of a CRI container whose task runs; NOT_FOUND or FAILED_PRECONDITION otherwise. */
  private async running(id: string): Promise<string> {
    const info = await this.d.containers.get(id);
    if (info.status !== 'running') {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `container ${info.container.id} is ${info.status}, not running`,
      );
    }
    return info.container.id;
  }
}

/** The error of a session whose client went away before the process ended. */
function left(what: string): BerthError {
  return new BerthError(Code.CANCELLED, `${what}: the client went away`);
}
