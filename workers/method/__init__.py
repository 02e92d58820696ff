"""The method (AudioGenie-Reasoner and its variants): the pipelines and their mechanisms
(pipelines.py, mechanisms.py), one module per kind of step (steps/), the LLM agents
(reasoning/) and perception (perception/: audio decoding, the tools, the evidence
document). Never imports workers.runtime: the one thing it asks of whoever runs it, whether
its step is still its own before paid work, goes through paid_work.py.
"""
