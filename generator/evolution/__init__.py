"""Private Evolution's parts apart from the model: the privacy accountant (accountant.py), the
noisy nearest-neighbour vote (mechanism.py), the iterations with their stored noise (loop.py) and
the distance of a population to the private records (utility.py)."""
