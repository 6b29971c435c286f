"""Choosing, building and using ``tf.distribute`` strategies: CPU, GPUs, multi-worker
clusters and TPUs, and the replica-aware data helpers the learner uses.
"""
