export { configKeyOf, credentialsFromDockerConfig, dockerConfigPath, TokenCache } from './registry/auth.js';
export { RegistryClient } from './registry/client.js';
export { formatReference, parseReference, type Reference } from './registry/reference.js';
export { createHandlers, createImageService } from './service.js';
export { loadImageSettings } from './settings.js';
