export { ContainerManager } from './containers/manager.js';
export { type Deps, natsDeps } from './deps.js';
export { createDomain, type Domain, type ExitTracking, startExitTracking } from './domain.js';
export { createHandlers, createService } from './service.js';
export * from './spec/index.js';
export { ContainerStore } from './store/store.js';
export { TaskManager } from './tasks/manager.js';
