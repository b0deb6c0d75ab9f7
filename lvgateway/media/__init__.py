"""Media: the IMediaRelay engines that relay each call's RTP."""
