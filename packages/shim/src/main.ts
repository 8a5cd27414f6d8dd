import { runService } from '@berth/kit';
import { entry } from './start.js';

await runService(entry);
