"""jupyter_kernel_test's standard conformance checks, on both backends."""

from __future__ import annotations

import unittest

import jupyter_kernel_test


class AsyncKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "async"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise ValueError('test')"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
    ]
    code_display_data = [
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))",
            "mime": "text/html",
        },
        {
            "code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))",
            "mime": "text/latex",
        },
    ]
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"


class AsyncKernelTrioTests(AsyncKernelTests):
    """The same checks on a kernel started with --interface.backend=trio."""

    @classmethod
    def setUpClass(cls) -> None:
        from conftest import kernel_argv
        from jupyter_client.manager import KernelManager

        cls.km = KernelManager(kernel_name="async")
        cls.km.kernel_spec.argv = kernel_argv("--interface.backend=trio")
        cls.km.start_kernel()
        cls.kc = cls.km.client()
        cls.kc.start_channels()
        cls.kc.wait_for_ready(timeout=30)


if __name__ == "__main__":
    unittest.main()
