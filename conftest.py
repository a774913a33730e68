"""Test-wide settings, also for the kernels nbval and papermill start (they inherit them).

Progress bars and hub traffic are off: nbval compares stderr, and nothing may load
from the network.
"""

import os

os.environ["EMBEVAL_PROGRESS"] = "0"
os.environ["TQDM_DISABLE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["PYTHONWARNINGS"] = "ignore"
