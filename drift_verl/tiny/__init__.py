"""The embedded default: a tiny arithmetic task, its tokenizer and model, and the reference policy warm-started
by verl's SFT trainer, all built locally on first use and cached.
"""
