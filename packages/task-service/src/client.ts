import {
  type Container,
  type ContainerInfo,
  type ContainerRef,
  type CreateContainerRequest,
  type DeleteContainerRequest,
  type ExecRequest,
  type ExitStatus,
  type KillRequest,
  type ListContainersReply,
  type ListContainersRequest,
  type PidsReply,
  type ProcessState,
  Service,
  type Task,
  TaskOps,
  type TaskProcessRef,
  type UpdateContainerRequest,
  type UpdateTaskRequest,
  type WaitRequest,
} from '@berth/api';
import { makeClient } from '@berth/kit';
import type { NatsConnection } from 'nats';

type Empty = Record<string, never>;

/** Request and reply types of every task-service operation. */
export type TaskApi = {
  'create-container': { in: CreateContainerRequest; out: Container };
  'get-container': { in: ContainerRef; out: ContainerInfo };
  'list-containers': { in: ListContainersRequest; out: ListContainersReply };
  'update-container': { in: UpdateContainerRequest; out: Container };
  'delete-container': { in: DeleteContainerRequest; out: Empty };
  create: { in: ContainerRef; out: Task };
  start: { in: TaskProcessRef; out: ProcessState };
  kill: { in: KillRequest; out: Empty };
  wait: { in: WaitRequest; out: ExitStatus };
  delete: { in: TaskProcessRef; out: ExitStatus };
  exec: { in: ExecRequest; out: ProcessState };
  pause: { in: ContainerRef; out: Empty };
  resume: { in: ContainerRef; out: Empty };
  pids: { in: ContainerRef; out: PidsReply };
  stats: { in: ContainerRef; out: Record<string, unknown> };
  update: { in: UpdateTaskRequest; out: Empty };
  'close-stdin': { in: TaskProcessRef; out: Empty };
  state: { in: TaskProcessRef; out: ProcessState };
};

/** A typed task-service client over NATS (any replica answers). */
export function taskClient(nc: NatsConnection, namespace?: string) {
  return makeClient<TaskApi>(nc, Service.task, TaskOps, namespace ? { namespace } : {});
}
export type TaskClient = ReturnType<typeof taskClient>;
