export { type ImageOps, imageClient, imageTimeouts } from './client.js';
export { dockerConfigPath } from './registry/auth.js';
export { formatReference, parseReference, type Reference } from './registry/reference.js';
export { createEndpoints, createImageService } from './service.js';
export { loadImageSettings } from './settings.js';
