"""Benchmark: how the per-round timing method affects onnxruntime CPU latency tables.

Times EfficientNet-Lite0, its 9 single-block drops and the all-blocks drop in interleaved shuffled
rounds, under several chunk designs, and compares the summed single-block savings with the measured
all-blocks drop. Usage: python -m benchmarks.profiling_method  (about 2 minutes on 2 cores).
"""
import random
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from exporters.onnx_file import export_onnx
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.network.surgery import drop_blocks


def main() -> None:
    lm=load_model('efficientnet_lite0'); st=analyse(lm.module,224); names=st.candidate_names()
    d=Path('/tmp/exp/onnx'); d.mkdir(parents=True, exist_ok=True)
    variants={'full':lm.module, **{b:drop_blocks(lm.module,[b]) for b in names}, 'all':drop_blocks(lm.module,names)}
    paths={}
    for k,m in variants.items():
        p=d/f"{k}.onnx"
        if not p.exists(): export_onnx(m, torch.randn(1,3,224,224), p)
        paths[k]=p
    x=np.random.randn(1,3,224,224).astype(np.float32)
    def sess(p, spin):
        o=ort.SessionOptions(); o.intra_op_num_threads=2; o.inter_op_num_threads=1
        if not spin: o.add_session_config_entry("session.intra_op.allow_spinning","0")
        s=ort.InferenceSession(str(p),o,providers=["CPUExecutionProvider"]); n=s.get_inputs()[0].name
        return lambda: s.run(None,{n:x})
    def trial(spin, warm, runs, rounds, stat):
        runners={k:sess(p,spin) for k,p in paths.items()}
        R={k:[] for k in runners}; rng=random.Random(0); t0=time.time()
        for r in range(rounds):
            order=list(runners); rng.shuffle(order)
            for k in order:
                f=runners[k]
                for _ in range(warm): f()
                ts=[]
                for _ in range(runs):
                    a=time.perf_counter(); f(); ts.append((time.perf_counter()-a)*1000)
                R[k].append(np.median(ts) if stat=='median' else np.percentile(ts,stat))
        full=np.array(R['full'])
        sav={b: np.array(R['full'])-np.array(R[b]) for b in names}
        med={b: np.median(v) for b,v in sav.items()}
        iqr=np.mean([np.subtract(*np.percentile(v,[75,25])) for v in sav.values()])
        pred=1-sum(med.values())/np.median(full); meas=np.median(np.array(R['all'])/full)
        print(f"spin={spin} warm={warm} runs={runs} stat={stat}: full {np.median(full):.2f}ms IQR {np.subtract(*np.percentile(full,[75,25])):.2f}; mean saving IQR {iqr:.3f}; pred all-drop {pred:.3f} measured {meas:.3f}; {time.time()-t0:.0f}s", flush=True)
    trial(True,3,10,15,'median')
    trial(False,3,10,15,'median')
    trial(True,10,20,8,'median')
    trial(True,3,10,15,25)


if __name__ == "__main__":
    main()
