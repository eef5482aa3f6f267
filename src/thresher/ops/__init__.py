"""Numeric helpers shared by stages: linear heads (softmax regression, a small MLP), k-means, nearest neighbours;
each works on any array-like of features (arrays, memory maps, embedding stores) in bounded memory."""
