import {
  ContainerRef,
  CreateContainerRequest,
  DeleteContainerRequest,
  ListContainersRequest,
  UpdateContainerRequest,
} from '@berth/api';
import { endpoint } from '@berth/kit';
import type { Domain } from '../domain.js';

/** Endpoints of the containers half: metadata, snapshot and spec. */
export function containerEndpoints(d: Domain) {
  return {
    'create-container': endpoint(
      CreateContainerRequest,
      (req, ctx) => d.containers.create(ctx.namespace, req),
      'create a container: resolve the image, prepare its rootfs, generate its OCI spec',
    ),
    'get-container': endpoint(ContainerRef, (req, ctx) => d.containers.get(ctx.namespace, req.id)),
    'list-containers': endpoint(ListContainersRequest, async (req, ctx) => ({
      containers: await d.containers.list(ctx.namespace, req),
    })),
    'update-container': endpoint(UpdateContainerRequest, (req, ctx) =>
      d.containers.update(ctx.namespace, req),
    ),
    'delete-container': endpoint(DeleteContainerRequest, async (req, ctx) => {
      await d.tasks.removeContainer(ctx.namespace, req.id, req.force ?? false);
      return {};
    }),
  };
}
