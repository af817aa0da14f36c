// tsc copies no Python: put the bridge beside the compiled modules that import it.
import { copyFileSync } from 'node:fs';
copyFileSync(new URL('../src/bridge.py', import.meta.url), new URL('../lib/bridge.py', import.meta.url));
