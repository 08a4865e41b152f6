"""The pure algorithm and its data: returns and weights, the batch and the loss, the trajectory store and content
identity, the schedules, metrics and answer parsing. Nothing here imports verl except the loss (its registry signature).
"""
