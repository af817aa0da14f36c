/**
 * JupyterLite plugin: registers the "Python (async)" kernel (async-kernel in Pyodide, in a
 * Web Worker) and routes JupyterLite's interrupt to it.
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import type { IKernel } from '@jupyterlite/services';
import { IKernelClient, IKernelSpecs } from '@jupyterlite/services';

import { AsyncKernel } from './kernel';

const PLUGIN_ID = 'async-kernel-lite:kernel';

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
  optional: [IKernelClient],
  activate: (
    app: JupyterFrontEnd,
    kernelspecs: IKernelSpecs,
    kernelClient: IKernelClient | null,
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
    kernelspecs.register({
      spec: {
        name: 'async',
        display_name: 'Python (async)',
        language: 'python',
        argv: [],
        resources: { 'logo-32x32': LOGO, 'logo-64x64': LOGO },
      },
      create: async (options: IKernel.IOptions): Promise<IKernel> =>
        new AsyncKernel({ ...options, pyodideUrl, wheelsUrl }),
    });
  },
};

export default [plugin];
