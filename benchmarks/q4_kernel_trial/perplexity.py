"""Perplexity of gemma-nb folders on tests/data/perplexity.txt (docs/quantization.md's measure),
with the trial's custom ops registered, so a converted folder and its source compare directly.

    python benchmarks/q4_kernel_trial/perplexity.py LIB FOLDER [FOLDER ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from with_trial_ops import register_everywhere  # noqa: E402

if __name__ == "__main__":
    register_everywhere(sys.argv[1])
    import gemma_nb
    from quant_accuracy import TEXT, perplexity

    for folder in sys.argv[2:]:
        model = gemma_nb.load(folder)
        ids = model.tokenizer.encode(TEXT)
        print(f"{folder}: perplexity {perplexity(model.logits(ids), ids):.3f} over {len(ids)} tokens")
