//go:build race

package e2e

// raceDetector: the race detector doubles goroutine stacks, so memory
// bounds that include stacks scale with it.
const raceDetector = true
