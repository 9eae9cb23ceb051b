"""What a run produces for others: the dataset folder with its card, and the Hub push."""
