"""The build side: corpus readers, encoders, the vector store, ingestion."""
