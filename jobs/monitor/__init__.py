"""`relay monitor`: what the endpoint answered, judged against what the model was trained on."""
