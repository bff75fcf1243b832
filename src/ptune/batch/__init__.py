"""From examples to a batch: templates that place continuous prompt tokens among the words and
input slots, and the encoding that lays out each example and pads a batch of them."""
