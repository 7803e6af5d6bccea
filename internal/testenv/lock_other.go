//go:build !unix

package testenv

import (
	"errors"
	"time"
)

// lockFile is not implemented outside Unix; neither are the servers.
func lockFile(path string, timeout time.Duration) (unlock func(), err error) {
	return nil, errors.New("testenv: mariadbd and redis-server tests need Linux or another Unix")
}
