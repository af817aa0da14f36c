/**
 * The kernel's Web Worker: loads Pyodide from the site, installs async-kernel and its
 * pure-Python dependencies with micropip from the site's own wheels, then runs bridge.py,
 * which serves CallbackKernel on Pyodide's asyncio loop.
 *
 * Loaded as a module worker and imports nothing at run time (Pyodide comes by URL).
 */

import type { FromWorker, IInitOptions, IStdinRequest, StdinAnswer, ToWorker } from './protocol';
import { Stdin } from './protocol';

interface IWheels {
  micropip: string;
  wheels: string[];
}

const post = (msg: FromWorker, transfer: Transferable[] = []): void =>
  (self as any).postMessage(msg, transfer);

let bridge: any = null;
let shared: IInitOptions['shared'] = null;
let serviceWorkerStdin: IInitOptions['serviceWorkerStdin'] = null;
const early: ToWorker[] = [];

/** Answers the Python side's synchronous calls. */
const host = {
  send(text: string, buffers: any): void {
    const list: ArrayBuffer[] = [];
    for (const view of buffers ?? []) {
      list.push(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
    }
    post({ type: 'message', text, buffers: list }, list);
  },
  ask_input(): string | null {
    if (shared !== null) {
      return waitOnSharedMemory(shared);
    }
    if (serviceWorkerStdin !== null) {
      return askServiceWorker(serviceWorkerStdin);
    }
    throw new Error(
      'input() needs a cross-origin isolated page (served with the COOP/COEP headers, as ' +
        "scripts/lite.sh does) or JupyterLite's service worker: this page has neither.",
    );
  },
  log(text: string): void {
    post({ type: 'log', text });
  },
  stopped(text: string): void {
    bridge = null;
    post({ type: 'failed', error: text });
  },
};

/** input() on a cross-origin isolated page: wait on the shared state word. */
function waitOnSharedMemory(memory: NonNullable<IInitOptions['shared']>): string | null {
  const head = new Int32Array(memory.stdin, 0, 2);
  // the page sets the state when the reply (or an interrupt) is in
  while (Atomics.load(head, 0) === Stdin.Waiting) {
    Atomics.wait(head, 0, 0, 1000);
  }
  const state = Atomics.load(head, 0);
  const length = Atomics.load(head, 1);
  const bytes = new Uint8Array(memory.stdin, Stdin.HeaderBytes, length).slice();
  Atomics.store(head, 0, Stdin.Waiting);
  if (state === Stdin.Interrupted) {
    return null;
  }
  if (state !== Stdin.Replied) {
    throw new Error(`unexpected stdin state ${state}`);
  }
  return new TextDecoder().decode(bytes);
}

/**
 * input() without shared memory: a synchronous POST that JupyterLite's service worker
 * passes to the page (its ServiceWorkerManager, our handler "async-kernel"); the response
 * comes when the user has answered (or the cell is interrupted).
 */
function askServiceWorker(stdin: NonNullable<IInitOptions['serviceWorkerStdin']>): string | null {
  const data: IStdinRequest = { kernelId: stdin.kernelId };
  const xhr = new XMLHttpRequest();
  const unreachable = (why: string): Error =>
    new Error(
      `input() could not reach JupyterLite's service worker (${why}). Without a cross-origin ` +
        'isolated page (COOP/COEP headers, as scripts/lite.sh serves) input() needs the ' +
        'service worker: reload the page once it is installed, and do not block it (private ' +
        'windows of some browsers do).',
    );
  try {
    xhr.open('POST', stdin.url, false); // synchronous: the kernel's input() blocks here
    xhr.setRequestHeader('Content-Type', 'application/json');
    xhr.send(JSON.stringify({ browsingContextId: stdin.browsingContextId, data }));
  } catch (err: any) {
    throw unreachable(String(err?.message ?? err));
  }
  if (xhr.status !== 200) {
    throw unreachable(`HTTP ${xhr.status} from ${stdin.url}`);
  }
  let answer: StdinAnswer;
  try {
    answer = JSON.parse(xhr.responseText);
  } catch {
    throw unreachable(`not an answer from the page: ${xhr.responseText.slice(0, 80)}`);
  }
  if ('interrupted' in answer) {
    return null;
  }
  if ('error' in answer) {
    throw new Error(answer.error);
  }
  return answer.reply;
}

async function start(options: IInitOptions): Promise<void> {
  shared = options.shared;
  serviceWorkerStdin = options.serviceWorkerStdin;
  post({ type: 'progress', text: 'loading Pyodide' });
  const { loadPyodide } = await import(/* webpackIgnore: true */ options.pyodideUrl);
  const indexURL = options.pyodideUrl.slice(0, options.pyodideUrl.lastIndexOf('/') + 1);
  const pyodide = await loadPyodide({ indexURL, fullStdLib: false });
  if (shared !== null) {
    pyodide.setInterruptBuffer(shared.interrupt);
  }
  const base = options.wheelsUrl.endsWith('/') ? options.wheelsUrl : options.wheelsUrl + '/';
  const listing = await fetch(base + 'wheels.json');
  if (!listing.ok) {
    throw new Error(`no wheel list at ${base}wheels.json (${listing.status}): was the site built by scripts/lite.sh?`);
  }
  const wheels: IWheels = await listing.json();
  post({ type: 'progress', text: 'installing async-kernel' });
  await pyodide.loadPackage(new URL(wheels.micropip, base).href, { checkIntegrity: false });
  const micropip = pyodide.pyimport('micropip');
  const urls = wheels.wheels.map((name) => new URL(name, base).href);
  try {
    await micropip.install.callKwargs(pyodide.toPy(urls), { deps: false, keep_going: true });
  } finally {
    micropip.destroy();
  }
  pyodide.FS.mkdirTree('/lib/async_kernel_lite');
  pyodide.FS.writeFile('/lib/async_kernel_lite/async_kernel_lite_bridge.py', options.bridge);
  pyodide.runPython("import sys; sys.path.insert(0, '/lib/async_kernel_lite')");
  const module = pyodide.pyimport('async_kernel_lite_bridge');
  module.install_orjson_shim();
  bridge = module.Bridge(host);
  bridge.start();
}

function handle(msg: ToWorker): void {
  switch (msg.type) {
    case 'message':
      bridge.receive(msg.text, msg.buffers.length ? msg.buffers.map((b) => new Uint8Array(b)) : null);
      break;
    case 'interrupt':
      // Taking the pending interrupt means the page will not also stop the loop with SIGINT.
      if (shared === null || Atomics.compareExchange(shared.pendingInterrupt, 0, msg.seq, 0) === msg.seq) {
        bridge.interrupt();
      } else if (shared !== null) {
        // The page has already sent SIGINT for this one (we were busy): if the busy code
        // ended before Python saw it, it must not land later in the kernel's own code.
        Atomics.store(shared.interrupt, 0, 0);
      }
      break;
    default:
      break;
  }
}

self.onmessage = (event: MessageEvent<ToWorker>): void => {
  const msg = event.data;
  if (msg.type === 'init') {
    start(msg.options).then(
      () => {
        post({ type: 'ready' });
        for (const waiting of early.splice(0)) {
          handle(waiting);
        }
      },
      (err: any) => post({ type: 'failed', error: String(err?.message ?? err) }),
    );
  } else if (bridge === null) {
    early.push(msg);
  } else {
    try {
      handle(msg);
    } catch (err: any) {
      post({ type: 'log', text: `async-kernel worker: ${err?.message ?? err}` });
    }
  }
};
