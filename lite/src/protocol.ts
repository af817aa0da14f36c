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

export interface IInitOptions {
  pyodideUrl: string;
  /** The folder holding wheels.json and the wheels it lists. */
  wheelsUrl: string;
  /** bridge.py's source. */
  bridge: string;
  shared: ISharedMemory | null;
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
