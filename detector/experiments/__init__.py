"""Experiments on the detector designs: the paper's ablations with several seeds.

* :mod:`.protocol`: the protocol fixed before results (presets ``cpu-full``, ``quick``,
  ``gpu-resnet50``) and the run key;
* :mod:`.runs`: one (design, seed) run, train -> detect -> WIDER AP, resumable;
* :mod:`.ablation`: every run plus the anchor statistics;
* :mod:`.paper`: the paper's numbers (Tables 1, 3, 4) and its claims (1)-(5);
* :mod:`.verdicts`: mean and spread over seeds, comparisons and verdicts;
* :mod:`.report`: report.json, report.md (Table 1 layout), the plots.
"""
