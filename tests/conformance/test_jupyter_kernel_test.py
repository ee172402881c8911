"""The Jupyter community's kernel conformance suite, run against skillkernel.

Every test of `KernelTests` is enabled here; a sample left empty would make
its test skip, so `test_every_sample_is_set` guards against that. The suite's
`IopubWelcomeTests` apply to kernels whose IOPub is XPUB; skillkernel's is
PUB (see transport/src/zmq.rs for why), so it does not run them.
"""

import unittest

import jupyter_kernel_test as jkt

KERNEL_NAME = "skillkernel"


class SkillKernelConformance(jkt.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "skill"
    file_extension = ".skill"

    code_hello_world = "!echo 'hello, world'"
    code_stderr = "!echo 'oops' 1>&2"

    completion_samples = [
        {"text": "%he", "matches": {"%help"}},
        {"text": "%hi", "matches": {"%history"}},
        {"text": "%%s", "matches": {"%%sh", "%%set", "%%skill"}},
        {"text": "%help var", "matches": {"vars", "variables"}},
        {"text": "%clear --w", "matches": {"--wait"}},
    ]

    complete_code_samples = ["%set x = 1", "What is the capital of France?", "!echo hi", "%%sh\necho hi\n\n"]
    incomplete_code_samples = ["%%sh", "%%sh\necho hi", "!echo a \\"]
    invalid_code_samples = ["%nosuchmagic", "%%nosuch\nbody", "%set x = 1\nplain prose"]

    code_page_something = "%help set"

    code_generate_error = "%get no_such_variable"

    code_execute_result = [
        {"code": "%set x = 3\n%get x", "result": "3"},
        {"code": "%set greeting = \"hello\"\n%get greeting", "result": "hello"},
    ]

    code_display_data = [
        {"code": "%vars", "mime": "text/html"},
        {"code": "%help", "mime": "text/markdown"},
    ]

    code_history_pattern = "%set x*"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "%set"

    code_clear_output = "%clear"

    def test_every_sample_is_set(self) -> None:
        """No conformance test may silently skip for want of a sample."""
        for attr in (
            "code_hello_world", "code_stderr", "completion_samples",
            "complete_code_samples", "incomplete_code_samples", "invalid_code_samples",
            "code_page_something", "code_generate_error", "code_execute_result",
            "code_display_data", "code_history_pattern", "supported_history_operations",
            "code_inspect_sample", "code_clear_output",
        ):
            self.assertTrue(getattr(self, attr), attr)


if __name__ == "__main__":
    unittest.main()
