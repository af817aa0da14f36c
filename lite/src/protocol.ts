/**
 * What the page and the kernel's worker say to each other (types only: the worker is
 * loaded as a self-contained module and imports nothing at run time).
 */

/** Shared memory, present only when the page is cross-origin isolated. */
export interface ISharedMemory {
  /** Pyodide's interrupt buffer: the page writes 2 (SIGINT) to stop a busy cell. */
  interrupt: Int32Array;
  /**
   * The interrupt the page has asked for and nobody has taken yet (its sequence number,
   * 0 for none). Whoever swaps it to 0 first handles it: the worker (its loop was free, it
   * cancels the awaiting cells) or the page (the worker did not answer: a busy cell).
   */
  pendingInterrupt: Int32Array;
  /** input(): [state, length] then the reply's UTF-8 JSON. See STDIN_* below. */
  stdin: SharedArrayBuffer;
}

/** input()'s state word (inlined by tsc: the worker imports nothing at run time). */
export const enum Stdin {
  Waiting = 0,
  Replied = 1,
  Interrupted = 2,
  HeaderBytes = 8,
}

/**
 * input() without shared memory: the worker POSTs to JupyterLite's service worker with a
 * synchronous XHR and blocks until the page answers (see IStdinRequest).
 */
export interface IServiceWorkerStdin {
  /** `{base}api/stdin/async-kernel`: the service worker hands it to the page's handler. */
  url: string;
  /** The page's id with JupyterLite's ServiceWorkerManager (whose handler answers). */
  browsingContextId: string;
  /** Which of the page's kernels asks. */
  kernelId: string;
}

/** What the worker's XHR carries to the page's stdin handler (the body's `data`). */
export interface IStdinRequest {
  kernelId: string;
}

/** The page's answer: the input_reply's JSON text, or that the wait was interrupted. */
export type StdinAnswer = { reply: string } | { interrupted: true } | { error: string };

export interface IInitOptions {
  pyodideUrl: string;
  /** The folder holding wheels.json and the wheels it lists. */
  wheelsUrl: string;
  /** bridge.py's source. */
  bridge: string;
  shared: ISharedMemory | null;
  /** Used for input() when `shared` is null; null when the page has no service worker. */
  serviceWorkerStdin: IServiceWorkerStdin | null;
}

export type ToWorker =
  | { type: 'init'; options: IInitOptions }
  | { type: 'message'; text: string; buffers: ArrayBuffer[] }
  | { type: 'interrupt'; seq: number };

export type FromWorker =
  | { type: 'progress'; text: string }
  | { type: 'ready' }
  | { type: 'failed'; error: string }
  | { type: 'message'; text: string; buffers: ArrayBuffer[] }
  | { type: 'log'; text: string };
