"""drift-verl inside verl: the DRIFT trainer and its phase-1 I/O, the feedback agent loop, the typed drift:
config, the job monitor, verifier workers, and the plugin that registers them in every verl process.
"""
