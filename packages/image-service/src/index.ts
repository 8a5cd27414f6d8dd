export { createEndpoints } from './service.js';
