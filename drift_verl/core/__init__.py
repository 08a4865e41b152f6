"""The pure algorithm and its data: returns and weights, the loss, batches, the trajectory store, the mini-batch
schedule, metrics and answer parsing. Nothing here imports verl except the loss (its registry signature).
"""
