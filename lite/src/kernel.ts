/**
 * The page's side of the kernel: an IKernel for JupyterLite that forwards every message to
 * the worker as it comes and every message from the worker to JupyterLite. It answers
 * nothing itself while the kernel runs; that is the Python kernel's job.
 */

import type { KernelMessage } from '@jupyterlab/services';
import type { IKernel } from '@jupyterlite/services';
import { PromiseDelegate } from '@lumino/coreutils';
import { Signal } from '@lumino/signaling';

import bridgeSource from './bridge.py';
import type {
  FromWorker,
  ISharedMemory,
  IServiceWorkerStdin,
  StdinAnswer,
  ToWorker,
} from './protocol';
import { Stdin } from './protocol';

/** How long the worker has to take an interrupt before the page sends SIGINT instead. */
const INTERRUPT_GRACE_MS = 150;
const STDIN_BYTES = 1 << 20;

/**
 * Kept apart from the `new URL(...)` so that the bundler emits the worker as the file it is
 * (an asset) instead of re-bundling it as a classic worker: Pyodide needs a module worker.
 */
function spawnModuleWorker(url: URL): Worker {
  return new Worker(url, { type: 'module' });
}

export interface IAsyncKernelOptions extends IKernel.IOptions {
  pyodideUrl: string;
  wheelsUrl: string;
  /** JupyterLite's service worker for input() on a page without shared memory (or null). */
  serviceWorker: Omit<IServiceWorkerStdin, 'kernelId'> | null;
}

export class AsyncKernel implements IKernel {
  /** Marks our kernels among JupyterLite's (the interrupt hook looks for it). */
  readonly isAsyncKernel = true;

  constructor(options: IAsyncKernelOptions) {
    this.id = options.id;
    this.name = options.name;
    this.location = options.location;
    this._send = options.sendMessage;
    this._shared = AsyncKernel._makeShared();
    this._worker = spawnModuleWorker(new URL('./async-kernel.worker.js', import.meta.url));
    this._worker.onmessage = (event: MessageEvent<FromWorker>) => this._fromWorker(event.data);
    this._worker.onerror = (event: ErrorEvent) => {
      this._fail(`the kernel's worker failed: ${event.message}`);
    };
    this._post({
      type: 'init',
      options: {
        pyodideUrl: options.pyodideUrl,
        wheelsUrl: options.wheelsUrl,
        bridge: bridgeSource,
        shared: this._shared,
        serviceWorkerStdin:
          this._shared === null && options.serviceWorker !== null
            ? { ...options.serviceWorker, kernelId: this.id }
            : null,
      },
    });
  }

  readonly id: string;
  readonly name: string;
  readonly location: string;

  get ready(): Promise<void> {
    return this._ready.promise;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  get disposed(): Signal<this, void> {
    return this._disposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._worker.terminate();
    this._answerStdin({ interrupted: true }); // a pending request of the gone worker
    this._ready.resolve();
    this._disposed.emit();
    Signal.clearData(this);
  }

  /** Called for each message from the frontend; returns at once (never waits for a reply). */
  async handleMessage(msg: KernelMessage.IMessage): Promise<void> {
    if (this._failure !== null) {
      this._answerFailed(msg);
      return;
    }
    if (msg.header.msg_type === 'input_reply') {
      const text = JSON.stringify(this._plain(msg));
      if (this._shared !== null) {
        this._writeStdin(Stdin.Replied, text);
      } else if (this._awaitingInput) {
        this._answerStdin({ reply: text });
      }
      return;
    }
    const buffers = (msg.buffers ?? []).map((b: any) => {
      const view = ArrayBuffer.isView(b) ? b : new Uint8Array(b);
      return view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength) as ArrayBuffer;
    });
    this._post({ type: 'message', text: JSON.stringify(this._plain(msg)), buffers }, buffers);
  }

  /**
   * Interrupt: an awaiting cell is cancelled by the worker itself (its loop is free and takes
   * the request at once); a cell that keeps the worker busy gets SIGINT through Pyodide's
   * interrupt buffer, which needs a cross-origin isolated page.
   */
  interrupt(): void {
    const seq = ++this._interruptSeq;
    if (this._shared === null) {
      if (this._awaitingInput || this._stdinWaiter !== null) {
        this._answerStdin({ interrupted: true });
      }
      this._post({ type: 'interrupt', seq });
      return;
    }
    this._writeStdin(Stdin.Interrupted, '', true);
    Atomics.store(this._shared.pendingInterrupt, 0, seq);
    this._post({ type: 'interrupt', seq });
    const shared = this._shared;
    setTimeout(() => {
      if (Atomics.compareExchange(shared.pendingInterrupt, 0, seq, 0) === seq) {
        Atomics.store(shared.interrupt, 0, 2); // SIGINT
      }
    }, INTERRUPT_GRACE_MS);
  }

  /**
   * input() through the service worker: JupyterLite's ServiceWorkerManager calls this (our
   * stdin handler) with the worker's blocked request; it resolves when the user answers.
   */
  stdinFromServiceWorker(): Promise<StdinAnswer> {
    if (this._stdinAnswer !== null) {
      const answer = this._stdinAnswer;
      this._stdinAnswer = null;
      return Promise.resolve(answer);
    }
    this._stdinWaiter?.resolve({ error: 'input() was asked again before it was answered' });
    this._stdinWaiter = new PromiseDelegate<StdinAnswer>();
    return this._stdinWaiter.promise;
  }

  /** Answer the worker's pending request, or keep the answer until its request is here. */
  private _answerStdin(answer: StdinAnswer): void {
    this._awaitingInput = false;
    const waiter = this._stdinWaiter;
    this._stdinWaiter = null;
    if (waiter !== null) {
      waiter.resolve(answer);
    } else if (!this._isDisposed) {
      // the reply can overtake the request: the worker posts input_request, then its XHR
      this._stdinAnswer = answer;
    }
  }

  private static _makeShared(): ISharedMemory | null {
    if (!(globalThis as any).crossOriginIsolated || typeof SharedArrayBuffer === 'undefined') {
      return null;
    }
    return {
      interrupt: new Int32Array(new SharedArrayBuffer(4)),
      pendingInterrupt: new Int32Array(new SharedArrayBuffer(4)),
      stdin: new SharedArrayBuffer(Stdin.HeaderBytes + STDIN_BYTES),
    };
  }

  /** The worker waits on the state word (only when it is waiting for input, unless forced). */
  private _writeStdin(state: Stdin, text: string, onlyIfWaiting = false): void {
    const shared = this._shared!;
    const head = new Int32Array(shared.stdin, 0, 2);
    if (onlyIfWaiting && !this._awaitingInput) {
      return;
    }
    const bytes = new TextEncoder().encode(text).slice(0, STDIN_BYTES);
    new Uint8Array(shared.stdin, Stdin.HeaderBytes, bytes.length).set(bytes);
    Atomics.store(head, 1, bytes.length);
    Atomics.store(head, 0, state);
    Atomics.notify(head, 0);
    this._awaitingInput = false;
  }

  private _plain(msg: KernelMessage.IMessage): object {
    return {
      channel: msg.channel,
      header: msg.header,
      parent_header: msg.parent_header ?? {},
      metadata: msg.metadata ?? {},
      content: msg.content ?? {},
    };
  }

  private _post(msg: ToWorker, transfer: Transferable[] = []): void {
    if (!this._isDisposed) {
      this._worker.postMessage(msg, transfer);
    }
  }

  private _fromWorker(msg: FromWorker): void {
    switch (msg.type) {
      case 'message': {
        const out = JSON.parse(msg.text);
        out.buffers = msg.buffers;
        // JupyterLite finds the client by the header's session (even for iopub, which it
        // then broadcasts): the client's session is the parent's.
        if (out.parent_header?.session) {
          out.header.session = out.parent_header.session;
        }
        if (out.header.msg_type === 'input_request') {
          this._awaitingInput = true;
          this._stdinAnswer = null; // left from an input() that failed before it asked
        }
        this._send(out);
        break;
      }
      case 'ready':
        this._ready.resolve();
        break;
      case 'failed':
        this._fail(msg.error);
        break;
      case 'progress':
        console.info(`async-kernel: ${msg.text}`);
        break;
      case 'log':
        console.info(msg.text);
        break;
    }
  }

  /** Start-up failed: the kernel stays alive and shows the reason in every cell it is given. */
  private _fail(error: string): void {
    if (this._failure !== null) {
      return;
    }
    this._failure = error;
    console.error(`async-kernel could not start: ${error}`);
    this._ready.resolve();
  }

  private _answerFailed(msg: KernelMessage.IMessage): void {
    const type = msg.header.msg_type;
    const reply = (channel: string, msgType: string, content: object): void => {
      this._send({
        channel,
        header: {
          msg_id: `${msgType}-${Math.random().toString(16).slice(2)}`,
          msg_type: msgType,
          session: channel === 'iopub' ? this.id : msg.header.session,
          username: 'kernel',
          date: new Date().toISOString(),
          version: '5.5',
        },
        parent_header: msg.header,
        metadata: {},
        content,
        buffers: [],
      } as any);
    };
    const error = {
      ename: 'KernelStartupError',
      evalue: `async-kernel could not start in this page: ${this._failure}`,
      traceback: [`\u001b[31masync-kernel could not start in this page:\u001b[0m ${this._failure}`],
    };
    reply('iopub', 'status', { execution_state: 'busy' });
    if (type === 'kernel_info_request') {
      reply('shell', 'kernel_info_reply', {
        status: 'ok',
        protocol_version: '5.5',
        implementation: 'async-kernel (failed to start)',
        implementation_version: '0',
        language_info: { name: 'python', file_extension: '.py', mimetype: 'text/x-python' },
        banner: error.evalue,
        help_links: [],
      });
    } else if (type === 'execute_request') {
      reply('iopub', 'error', error);
      reply('shell', 'execute_reply', { status: 'error', execution_count: null, ...error });
    } else if (type.endsWith('_request')) {
      const channel = msg.channel === 'control' ? 'control' : 'shell';
      reply(channel, type.replace(/_request$/, '_reply'), { status: 'error', ...error });
    }
    reply('iopub', 'status', { execution_state: 'idle' });
  }

  private _send: IKernel.SendMessage;
  private _worker: Worker;
  private _shared: ISharedMemory | null;
  private _ready = new PromiseDelegate<void>();
  private _failure: string | null = null;
  private _awaitingInput = false;
  private _stdinWaiter: PromiseDelegate<StdinAnswer> | null = null;
  private _stdinAnswer: StdinAnswer | null = null;
  private _interruptSeq = 0;
  private _isDisposed = false;
  private _disposed = new Signal<this, void>(this);
}
