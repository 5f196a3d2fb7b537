package store

// LargestTurnBatch is the most turns one transaction has held so far.
func (s *Store) LargestTurnBatch() int { return s.commits.largestBatch() }
