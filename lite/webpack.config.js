// Extra rules for `jupyter builder build`: the worker is emitted as a file of its own (it is a
// self-contained ES module, loaded with `new Worker(url, { type: 'module' })`), and the
// Python bridge is inlined as text.
module.exports = {
  module: {
    rules: [
      { test: /\.worker\.js$/, type: 'asset/resource', generator: { filename: '[name].[contenthash][ext]' } },
      { test: /\.py$/, type: 'asset/source' },
    ],
  },
};
