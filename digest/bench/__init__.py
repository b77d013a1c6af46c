"""`digest bench`: the timing harness (run.py), its workload (workload.py), the comparison with
llama.cpp's llama-batched-bench and the simulated ceiling (native.py), the peak memory of a whole run
(memory.py), and llama.cpp's llama-server as a peer fed the same requests over HTTP (peer.py)."""
