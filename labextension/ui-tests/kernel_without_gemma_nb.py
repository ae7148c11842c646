"""An IPython kernel in which gemma_nb cannot be imported, as in an environment without it.

A finder placed first on sys.meta_path raises what the import system raises for a package that
is not installed (ModuleNotFoundError with name="gemma_nb"); everything else imports as usual.
"""

import sys


class _WithoutGemmaNb:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "gemma_nb":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, _WithoutGemmaNb())

# Imported after the finder is in place: nothing may import gemma_nb before it.
from ipykernel.kernelapp import launch_new_instance

launch_new_instance()
