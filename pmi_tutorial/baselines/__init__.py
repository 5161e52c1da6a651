"""Peer methods that PMI is compared with, written from their papers' descriptions.

* :mod:`pmi_tutorial.baselines.dataset_inference`: Dataset Inference (Maini, Yaghini and
  Papernot, ICLR 2021), black-box ("blind walk") variant.
"""
