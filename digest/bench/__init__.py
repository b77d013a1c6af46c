"""`digest bench`: the timing harness and its workload (run.py), and llama.cpp's llama-server as a
peer fed the same requests over HTTP (peer.py)."""
