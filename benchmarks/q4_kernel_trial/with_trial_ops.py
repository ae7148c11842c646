"""`gemma-nb ...` with the trial's custom-op library registered in every onnxruntime session.

    python benchmarks/q4_kernel_trial/with_trial_ops.py LIB bench FOLDER --json ...
"""

import sys

import onnxruntime as ort


def register_everywhere(library: str) -> None:
    base = ort.SessionOptions

    class WithTrialOps(base):
        def __init__(self) -> None:
            super().__init__()
            self.register_custom_ops_library(library)

    ort.SessionOptions = WithTrialOps


if __name__ == "__main__":
    register_everywhere(sys.argv[1])
    from gemma_nb.cli import main

    sys.exit(main(sys.argv[2:]))
