import { attach } from './attach.js';
import { containerStats, listContainerStats } from './container-stats.js';
import { containerStatus } from './container-status.js';
import { createContainer } from './create-container.js';
import { exec } from './exec.js';
import { execSync } from './exec-sync.js';
import { getContainerEvents } from './get-container-events.js';
import { imageFsInfo } from './image-fs-info.js';
import { imageStatus } from './image-status.js';
import { listContainers } from './list-containers.js';
import { listImages, streamImages } from './list-images.js';
import { listPodSandbox } from './list-pod-sandbox.js';
import { listPodSandboxStats, podSandboxStats } from './pod-sandbox-stats.js';
import { podSandboxStatus } from './pod-sandbox-status.js';
import { portForward } from './port-forward.js';
import { pullImage } from './pull-image.js';
import { removeContainer } from './remove-container.js';
import { removeImage } from './remove-image.js';
import { removePodSandbox } from './remove-pod-sandbox.js';
import { reopenContainerLog } from './reopen-container-log.js';
import { runPodSandbox } from './run-pod-sandbox.js';
import { runtimeConfig } from './runtime-config.js';
import { startContainer } from './start-container.js';
import { status } from './status.js';
import { stopContainer } from './stop-container.js';
import { stopPodSandbox } from './stop-pod-sandbox.js';
import {
  streamContainerStats,
  streamContainers,
  streamPodSandboxes,
  streamPodSandboxStats,
} from './stream-lists.js';
import type { StreamHandler, UnaryHandler } from './types.js';
import { updateContainerResources } from './update-container-resources.js';
import { updateRuntimeConfig } from './update-runtime-config.js';
import { version } from './version.js';

export type { HandlerDeps, StreamHandler, UnaryHandler } from './types.js';

/**
 * The unary CRI RPCs berth implements, by "<Service>/<Method>". Every RPC not listed here or in
 * `implementedStreams` answers UNIMPLEMENTED naming itself.
 */
export const implemented: Readonly<Record<string, UnaryHandler>> = {
  'RuntimeService/Version': version,
  'RuntimeService/Status': status,
  'RuntimeService/RuntimeConfig': runtimeConfig,
  'RuntimeService/UpdateRuntimeConfig': updateRuntimeConfig,
  'RuntimeService/RunPodSandbox': runPodSandbox,
  'RuntimeService/StopPodSandbox': stopPodSandbox,
  'RuntimeService/RemovePodSandbox': removePodSandbox,
  'RuntimeService/PodSandboxStatus': podSandboxStatus,
  'RuntimeService/ListPodSandbox': listPodSandbox,
  'RuntimeService/CreateContainer': createContainer,
  'RuntimeService/StartContainer': startContainer,
  'RuntimeService/StopContainer': stopContainer,
  'RuntimeService/RemoveContainer': removeContainer,
  'RuntimeService/ListContainers': listContainers,
  'RuntimeService/ContainerStatus': containerStatus,
  'RuntimeService/ExecSync': execSync,
  'RuntimeService/Exec': exec,
  'RuntimeService/Attach': attach,
  'RuntimeService/PortForward': portForward,
  'RuntimeService/UpdateContainerResources': updateContainerResources,
  'RuntimeService/ReopenContainerLog': reopenContainerLog,
  'RuntimeService/ContainerStats': containerStats,
  'RuntimeService/ListContainerStats': listContainerStats,
  'RuntimeService/PodSandboxStats': podSandboxStats,
  'RuntimeService/ListPodSandboxStats': listPodSandboxStats,
  'ImageService/ListImages': listImages,
  'ImageService/ImageStatus': imageStatus,
  'ImageService/PullImage': pullImage,
  'ImageService/RemoveImage': removeImage,
  'ImageService/ImageFsInfo': imageFsInfo,
};

/** The server-streaming CRI RPCs berth implements. */
export const implementedStreams: Readonly<Record<string, StreamHandler>> = {
  'ImageService/StreamImages': streamImages,
  'RuntimeService/GetContainerEvents': getContainerEvents,
  'RuntimeService/StreamPodSandboxes': streamPodSandboxes,
  'RuntimeService/StreamContainers': streamContainers,
  'RuntimeService/StreamContainerStats': streamContainerStats,
  'RuntimeService/StreamPodSandboxStats': streamPodSandboxStats,
};
