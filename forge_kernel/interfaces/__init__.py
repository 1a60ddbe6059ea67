"""Interfaces every extension kind implements: one module per kind.

======================  ==============================  ========================================
kind                    interface                       registered through
======================  ==============================  ========================================
backend                 ``backend.Backend``             ``forge_register_backends``
scheduler               ``scheduler.Scheduler``         ``forge_register_schedulers``
kv cache                ``kv_cache.KVCache``            ``forge_register_kv_caches``
weight loader           ``loader.WeightLoader``         ``forge_register_weight_loaders``
model architecture      ``architecture.ModelArchitecture``  ``forge_register_model_architectures``
quantizer               ``quantizer.Quantizer``         ``forge_register_quantizers``
trainer                 ``trainer.Trainer``             ``forge_register_trainers``
tool                    ``tool.Tool``                   ``forge_register_tools``
endpoint / middleware   ``endpoint.Endpoint``           ``forge_register_endpoints``
constraint compiler     ``constraint.ConstraintCompiler``  ``forge_register_constraint_compilers``
======================  ==============================  ========================================

Shared types: ``tokenizer`` (Tokenizer), ``batch`` (ForwardBatch: one step's tokens), ``model``
(CausalLM, built by an architecture). Imports only point "down" (tokenizer <- loader <- backend;
batch <- kv_cache <- model <- architecture), and torch is imported only for type checking, so
importing an interface stays cheap.
"""
