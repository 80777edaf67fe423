package keys

// Version is the version sent in the User-Agent header.
const Version = version

// SetMaxAnswerBody lowers the success-answer limit for a test and returns
// the function that restores it.
func SetMaxAnswerBody(n int64) (restore func()) {
	old := maxAnswerBody
	maxAnswerBody = n
	return func() { maxAnswerBody = old }
}
