"""The text side of image-text pre-training (issue 21, 002): captions templated from class names, a word-level
vocabulary, and the text tower that embeds token ids."""
