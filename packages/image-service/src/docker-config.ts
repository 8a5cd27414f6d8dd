// The part of the image-service a client needs on its own machine: reading references as docker
// does and the credentials of docker's config.json. Kept apart from the registry client, the
// content store and the rest, so `berth` loads nothing else of the image-service.
export {
  configKeyOf,
  credentialsFromDockerConfig,
  dockerConfigPath,
  helperFor,
  readDockerConfig,
} from './registry/auth.js';
export { helperErase, helperGet, helperStore } from './registry/credential-helper.js';
export { formatReference, parseReference, type Reference } from './registry/reference.js';
