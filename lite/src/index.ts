/**
 * JupyterLite plugin: registers the "Python (async)" kernel (async-kernel in Pyodide, in a
 * Web Worker) and routes JupyterLite's interrupt to it.
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { IServiceWorkerManager } from '@jupyterlite/apputils';
import type { IKernel } from '@jupyterlite/services';
import { IKernelClient, IKernelSpecs } from '@jupyterlite/services';

import { AsyncKernel } from './kernel';
import type { IStdinRequest, StdinAnswer } from './protocol';

const PLUGIN_ID = 'async-kernel-lite:kernel';
/** Our stdin handler's name with the service worker: requests go to `{base}api/stdin/<it>`. */
const STDIN_HANDLER = 'async-kernel';

const LOGO = `data:image/svg+xml;base64,${btoa(
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#2b6cb0"/>' +
    '<text x="32" y="42" font-size="26" text-anchor="middle" fill="#fff" font-family="sans-serif">py|a</text></svg>',
)}`;

/**
 * JupyterLite's kernel client cancels its own queue on interrupt but never tells the kernel:
 * wrap it so that our kernels hear of it.
 */
function routeInterrupts(client: IKernelClient): void {
  const original = client.interrupt.bind(client);
  client.interrupt = async (kernelId: string): Promise<void> => {
    const kernel: any = await client.getModel(kernelId);
    if (kernel?.isAsyncKernel) {
      (kernel as AsyncKernel).interrupt();
    }
    return original(kernelId);
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'async-kernel running in Pyodide in a Web Worker',
  autoStart: true,
  requires: [IKernelSpecs],
  optional: [IKernelClient, IServiceWorkerManager],
  activate: (
    app: JupyterFrontEnd,
    kernelspecs: IKernelSpecs,
    kernelClient: IKernelClient | null,
    serviceWorker: IServiceWorkerManager | null,
  ) => {
    const settings = JSON.parse(PageConfig.getOption('litePluginSettings') || '{}')[PLUGIN_ID] ?? {};
    const base = PageConfig.getBaseUrl();
    const pyodideUrl = new URL(settings.pyodideUrl ?? 'static/pyodide/pyodide.mjs', base).href;
    const wheelsUrl = URLExt.join(new URL(settings.wheelsUrl ?? 'static/async-kernel/', base).href, '/');
    if (kernelClient) {
      routeInterrupts(kernelClient);
    } else {
      console.warn('async-kernel: no kernel client to hook; interrupt will not reach the kernel');
    }
    // input() on a page without shared memory: the worker's blocking request reaches the page
    // through JupyterLite's service worker, which hands it to this handler.
    const kernels = new Map<string, AsyncKernel>();
    serviceWorker?.registerStdinHandler(STDIN_HANDLER, async (data: IStdinRequest) => {
      const kernel = kernels.get(data?.kernelId);
      const answer: StdinAnswer = kernel
        ? await kernel.stdinFromServiceWorker()
        : { error: `input(): no kernel ${data?.kernelId} in this page` };
      return answer;
    });
    const stdin = serviceWorker
      ? {
          url: new URL(`api/stdin/${STDIN_HANDLER}`, base).href,
          browsingContextId: serviceWorker.browsingContextId,
        }
      : null;
    kernelspecs.register({
      spec: {
        name: 'async',
        display_name: 'Python (async)',
        language: 'python',
        argv: [],
        resources: { 'logo-32x32': LOGO, 'logo-64x64': LOGO },
      },
      create: async (options: IKernel.IOptions): Promise<IKernel> => {
        const kernel = new AsyncKernel({ ...options, pyodideUrl, wheelsUrl, serviceWorker: stdin });
        kernels.set(kernel.id, kernel);
        kernel.disposed.connect(() => {
          if (kernels.get(kernel.id) === kernel) {
            kernels.delete(kernel.id);
          }
        });
        return kernel;
      },
    });
  },
};

export default [plugin];
