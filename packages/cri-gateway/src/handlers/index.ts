import { imageFsInfo } from './image-fs-info.js';
import { imageStatus } from './image-status.js';
import { listImages, streamImages } from './list-images.js';
import { pullImage } from './pull-image.js';
import { removeImage } from './remove-image.js';
import { runtimeConfig } from './runtime-config.js';
import { status } from './status.js';
import type { StreamHandler, UnaryHandler } from './types.js';
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
  'ImageService/ListImages': listImages,
  'ImageService/ImageStatus': imageStatus,
  'ImageService/PullImage': pullImage,
  'ImageService/RemoveImage': removeImage,
  'ImageService/ImageFsInfo': imageFsInfo,
};

/** The server-streaming CRI RPCs berth implements. */
export const implementedStreams: Readonly<Record<string, StreamHandler>> = {
  'ImageService/StreamImages': streamImages,
};
