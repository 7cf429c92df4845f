"""``seekstack sim``: an OpenAI-compatible engine simulator speaking vLLM's, SGLang's, llama.cpp's
or a plain OpenAI server's dialect — their routes, metric names and error wordings — with
deterministic output, DeepSeek-R1 style reasoning, a KV capacity with queueing, timing that grows
with load, and fault injection (refuse, hang, HTTP 500, garbage, a stream broken mid-way, slow
tokens, exit). Operators rehearse failover and rollouts with it; the tests and benchmarks use it
for every engine that cannot run on the machine at hand. It never pretends: every start logs
``SIMULATING``, and ``seekstack ps`` marks simulated replicas.
"""

from .engine import Faults, SimConfig, SimEngine
from .server import SimServer

__all__ = ["Faults", "SimConfig", "SimEngine", "SimServer"]
