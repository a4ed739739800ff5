import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

# the proxy and the venv's scripts, also when pytest is run without `make`
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), str(REPO / "hub_config/proxy/node_modules/.bin"), os.environ["PATH"]]
)
