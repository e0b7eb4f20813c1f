"""Training: tokenised datasets, masked-token training of the transformers, checkpoints with exact resume,
multi-process (DDP) launch, LoRA fine-tuning and codec training."""
