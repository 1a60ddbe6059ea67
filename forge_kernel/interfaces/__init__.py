"""Interfaces every extension kind implements: one module per kind.

=====================  =====================================  ==================================
kind                   interface                              registered through
=====================  =====================================  ==================================
backend                :class:`backend.Backend`               ``forge_register_backends``
scheduler              :class:`scheduler.Scheduler`           ``forge_register_schedulers``
kv cache               :class:`kv_cache.KVCache`              ``forge_register_kv_caches``
weight loader          :class:`model.WeightLoader`            ``forge_register_weight_loaders``
model architecture     :class:`model.ModelArchitecture`       ``forge_register_model_architectures``
quantizer              :class:`quantizer.Quantizer`           ``forge_register_quantizers``
trainer                :class:`trainer.Trainer`               ``forge_register_trainers``
tool                   :class:`tool.Tool`                     ``forge_register_tools``
endpoint / middleware  :class:`endpoint.Endpoint`             ``forge_register_endpoints``
constraint compiler    :class:`constraint.ConstraintCompiler` ``forge_register_constraint_compilers``
=====================  =====================================  ==================================

The modules import torch only for type checking, so importing an interface stays cheap.
"""
