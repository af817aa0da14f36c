"""async-kernel's JupyterLite extension: the "Python (async)" kernel in the browser.

Installing this package puts the extension in ``share/jupyter/labextensions``, where
``jupyter lite build`` finds it.  The site itself is built by ``scripts/lite.sh``.
"""

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "async-kernel-lite"}]
